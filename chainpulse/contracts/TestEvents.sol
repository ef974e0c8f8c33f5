// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// Emits events of every ABI type with the values it is called with: the oracle of the
/// event decoding tests (what a call passed is what the event must decode to).
contract TestEvents {
    struct Inner {
        uint8 a;
        bytes32 b;
    }

    struct Outer {
        string s;
        int256 i;
        Inner[] inners;
        address[2] pair;
    }

    event Integers(uint8 indexed u8, int8 indexed i8, uint256 u256, int256 i256, uint24 u24, int136 i136);
    event Scalars(address indexed who, bool indexed flag, bytes32 indexed tag, bytes1 b1, bytes20 b20, address other, bool on);
    event Dynamic(string indexed label, bytes indexed blob, string text, bytes data);
    event Arrays(uint256[] indexed ids, uint256[] values, address[3] fixedAddrs, int16[][] nested, string[] names, bytes[2] blobs);
    event Tuples(Outer indexed hashed, Outer outer, Inner[2] twoInners, uint256);
    event Overloaded(uint256 value);
    event Overloaded(address who, uint256 value);
    event Anon(address indexed who, uint256 value) anonymous;

    function integers(uint8 u8, int8 i8, uint256 u256, int256 i256, uint24 u24, int136 i136) external {
        emit Integers(u8, i8, u256, i256, u24, i136);
    }

    function scalars(address who, bool flag, bytes32 tag, bytes1 b1, bytes20 b20, address other, bool on) external {
        emit Scalars(who, flag, tag, b1, b20, other, on);
    }

    function dynamic(string calldata label, bytes calldata blob, string calldata text, bytes calldata data) external {
        emit Dynamic(label, blob, text, data);
    }

    function arrays(
        uint256[] calldata ids,
        uint256[] calldata values,
        address[3] calldata fixedAddrs,
        int16[][] calldata nested,
        string[] calldata names,
        bytes[2] calldata blobs
    ) external {
        emit Arrays(ids, values, fixedAddrs, nested, names, blobs);
    }

    /// The structs are built from flat arguments (the tests' encoder takes no tuples).
    function tuples(
        string calldata s,
        int256 i,
        uint8[] calldata as_,
        bytes32[] calldata bs,
        address[2] calldata pair,
        uint256 last
    ) external {
        require(as_.length == bs.length, "as_ and bs differ in length");
        Inner[] memory inners = new Inner[](as_.length);
        for (uint256 k = 0; k < as_.length; k++) {
            inners[k] = Inner(as_[k], bs[k]);
        }
        Outer memory outer = Outer(s, i, inners, pair);
        Inner[2] memory two = [Inner(1, bytes32(uint256(1))), Inner(2, bytes32(uint256(2)))];
        emit Tuples(outer, outer, two, last);
    }

    function overloaded(address who, uint256 value) external {
        emit Overloaded(value);
        emit Overloaded(who, value);
        emit Anon(who, value);
    }
}
