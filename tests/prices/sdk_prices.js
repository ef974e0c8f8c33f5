// Prices as the Uniswap SDK computes them (@uniswap/sdk-core's exact Price, which is what
// @uniswap/v3-sdk's Pool.priceOf and @uniswap/v2-sdk's Pair.priceOf build): one JSON
// request per line on stdin, {kind, token0, token1, decimals0, decimals1, priced, raw}
// with raw = [reserve0, reserve1] (v2) or sqrtPriceX96 (v3), all integers as strings.
// Prints, per line, the priced token's price in the other, adjusted for decimals, as
// the exact fraction {numerator, denominator} (never toSignificant: it rounds).
"use strict";
const path = require("path");
const readline = require("readline");
const { Token, Price } = require(path.join(__dirname, "..", "..", "node_modules", "@uniswap", "sdk-core"));

const Q192 = (2n ** 192n).toString();
const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const q = JSON.parse(line);
  const token0 = new Token(31337, q.token0, q.decimals0);
  const token1 = new Token(31337, q.token1, q.decimals1);
  const token0Price =
    q.kind === "v2"
      ? new Price(token0, token1, q.raw[0], q.raw[1]) // Pair.token0Price
      : new Price(token0, token1, Q192, (BigInt(q.raw) * BigInt(q.raw)).toString()); // Pool.token0Price
  const price = q.priced === "token0" ? token0Price : token0Price.invert();
  const exact = price.adjustedForDecimals;
  console.log(JSON.stringify({ numerator: exact.numerator.toString(), denominator: exact.denominator.toString() }));
});
