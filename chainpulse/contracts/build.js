// Compiles the test contracts with the solc that the npm package bundles (pinned in
// package.json; never a downloaded compiler) and writes artifacts.json beside them.
// Reproducible bytecode: relative source unit names, no metadata hash or CBOR, a named
// EVM version. `node build.js --check` fails when artifacts.json is not what the
// sources compile to. Regenerate with `make contracts`.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const here = __dirname;
const sources = {};
for (const name of fs.readdirSync(here).filter((f) => f.endsWith(".sol")).sort()) {
  sources[name] = { content: fs.readFileSync(path.join(here, name), "utf8") };
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    evmVersion: "cancun",
    optimizer: { enabled: true, runs: 200 },
    metadata: { bytecodeHash: "none", appendCBOR: false },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
const artifacts = { compiler: solc.version(), evmVersion: input.settings.evmVersion, contracts: {} };
for (const file of Object.keys(output.contracts).sort()) {
  for (const [name, contract] of Object.entries(output.contracts[file])) {
    if (!contract.evm.bytecode.object) continue; // an interface
    artifacts.contracts[name] = { source: file, abi: contract.abi, bytecode: "0x" + contract.evm.bytecode.object };
  }
}
const text = JSON.stringify(artifacts, null, 2) + "\n";
const target = path.join(here, "artifacts.json");
if (process.argv.includes("--check")) {
  const committed = fs.existsSync(target) ? fs.readFileSync(target, "utf8") : "";
  if (committed !== text) {
    console.error("artifacts.json does not match the sources: run `make contracts`");
    process.exit(1);
  }
  console.log("artifacts.json matches the sources");
} else {
  fs.writeFileSync(target, text);
  console.log(`wrote ${target} (${Object.keys(artifacts.contracts).join(", ")})`);
}
