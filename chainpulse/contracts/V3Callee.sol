// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

interface ITransfer {
    function transfer(address to, uint256 value) external returns (bool);
}

interface IV3Pool {
    function token0() external view returns (address);
    function token1() external view returns (address);
    function mint(address recipient, int24 tickLower, int24 tickUpper, uint128 amount, bytes calldata data)
        external
        returns (uint256 amount0, uint256 amount1);
    function burn(int24 tickLower, int24 tickUpper, uint128 amount)
        external
        returns (uint256 amount0, uint256 amount1);
    function swap(
        address recipient,
        bool zeroForOne,
        int256 amountSpecified,
        uint160 sqrtPriceLimitX96,
        bytes calldata data
    ) external returns (int256 amount0, int256 amount1);
}

/// The caller a real Uniswap V3 pool needs for `mint` and `swap`: the pool calls back
/// for payment, and this contract pays from the tokens it holds (send it tokens first;
/// TestToken has no allowances). It owns the positions it mints, so it can burn them.
/// Only the pool it is calling may call back.
contract V3Callee {
    address private calling;

    function mint(address pool, int24 tickLower, int24 tickUpper, uint128 amount) external {
        calling = pool;
        IV3Pool(pool).mint(address(this), tickLower, tickUpper, amount, "");
        calling = address(0);
    }

    function burn(address pool, int24 tickLower, int24 tickUpper, uint128 amount) external {
        IV3Pool(pool).burn(tickLower, tickUpper, amount);
    }

    /// Swap on `pool` up to `sqrtPriceLimitX96`; `amountSpecified` > 0 is an exact input.
    function swap(address pool, bool zeroForOne, int256 amountSpecified, uint160 sqrtPriceLimitX96) external {
        calling = pool;
        IV3Pool(pool).swap(address(this), zeroForOne, amountSpecified, sqrtPriceLimitX96, "");
        calling = address(0);
    }

    function uniswapV3MintCallback(uint256 amount0, uint256 amount1, bytes calldata) external {
        _pay(amount0, amount1);
    }

    function uniswapV3SwapCallback(int256 amount0, int256 amount1, bytes calldata) external {
        _pay(amount0 > 0 ? uint256(amount0) : 0, amount1 > 0 ? uint256(amount1) : 0);
    }

    function _pay(uint256 amount0, uint256 amount1) private {
        require(msg.sender == calling, "not the pool being called");
        if (amount0 > 0) require(ITransfer(IV3Pool(msg.sender).token0()).transfer(msg.sender, amount0), "pay0");
        if (amount1 > 0) require(ITransfer(IV3Pool(msg.sender).token1()).transfer(msg.sender, amount1), "pay1");
    }
}
