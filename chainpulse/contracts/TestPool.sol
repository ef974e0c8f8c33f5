// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// A minimal Uniswap-V3-style pool for tests and the dev chain: it emits V3's
/// `Initialize` and `Swap` events with the `sqrtPriceX96` it is given. The tick it
/// reports is a placeholder: prices must come from `sqrtPriceX96`, never from the tick.
contract TestPool {
    address public token0; // what chainpulse reads as the pool's tokens (setTokens)
    address public token1;

    function setTokens(address token0_, address token1_) external {
        token0 = token0_;
        token1 = token1_;
    }

    uint160 public sqrtPriceX96;

    event Initialize(uint160 sqrtPriceX96, int24 tick);
    event Swap(
        address indexed sender,
        address indexed recipient,
        int256 amount0,
        int256 amount1,
        uint160 sqrtPriceX96,
        uint128 liquidity,
        int24 tick
    );

    function initialize(uint160 price) external {
        require(sqrtPriceX96 == 0, "already initialized");
        sqrtPriceX96 = price;
        emit Initialize(price, 0);
    }

    function swap(uint160 price, int256 amount0, int256 amount1) external {
        sqrtPriceX96 = price;
        emit Swap(msg.sender, msg.sender, amount0, amount1, price, 1e18, 0);
    }
}
