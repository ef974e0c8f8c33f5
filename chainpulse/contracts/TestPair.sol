// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// A minimal Uniswap-V2-style pair for tests and the dev chain: two reserves that
/// `swap` and `sync` move, announced with V2's `Sync` event. No tokens change hands.
contract TestPair {
    address public token0; // what chainpulse reads as the pool's tokens (setTokens)
    address public token1;

    function setTokens(address token0_, address token1_) external {
        token0 = token0_;
        token1 = token1_;
    }

    uint112 public reserve0;
    uint112 public reserve1;

    event Sync(uint112 reserve0, uint112 reserve1);

    constructor(uint112 initial0, uint112 initial1) {
        _update(initial0, initial1);
    }

    /// Set both reserves, as a pair's `sync` does after a transfer.
    function sync(uint112 new0, uint112 new1) external {
        _update(new0, new1);
    }

    /// Several reserve updates in one transaction (one `Sync` each).
    function syncs(uint112[] calldata new0, uint112[] calldata new1) external {
        require(new0.length == new1.length, "lengths differ");
        for (uint256 i = 0; i < new0.length; i++) {
            _update(new0[i], new1[i]);
        }
    }

    /// Trade `amountIn` of token0 (or of token1 when `zeroForOne` is false) at constant
    /// product, without fee.
    function swap(uint112 amountIn, bool zeroForOne) external {
        uint256 k = uint256(reserve0) * uint256(reserve1);
        if (zeroForOne) {
            uint256 next0 = uint256(reserve0) + amountIn;
            _update(uint112(next0), uint112(k / next0));
        } else {
            uint256 next1 = uint256(reserve1) + amountIn;
            _update(uint112(k / next1), uint112(next1));
        }
    }

    function _update(uint112 new0, uint112 new1) private {
        reserve0 = new0;
        reserve1 = new1;
        emit Sync(new0, new1);
    }
}
