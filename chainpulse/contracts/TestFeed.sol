// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// A minimal Chainlink-style aggregator for tests and the dev chain: each `submit`
/// starts a round and emits `AnswerUpdated` with the answer (signed) in topic 1.
contract TestFeed {
    uint8 public constant decimals = 8;
    string public constant description = "TEST / USD";
    int256 public latestAnswer;
    uint256 public latestRound;

    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);

    function submit(int256 answer) external {
        latestRound += 1;
        latestAnswer = answer;
        emit AnswerUpdated(answer, latestRound, block.timestamp);
    }
}
