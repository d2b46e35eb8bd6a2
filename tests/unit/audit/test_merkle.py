"""RFC 9162 Merkle tree: known answers from independent implementations, then properties.

Vectors (copied verbatim, hex or base64 as published):

* ``LEAF_INPUTS``, ``NODE_HASHES``, ``ROOTS``, ``COMPACT_TREES``: transparency-dev/merkle,
  ``testonly/constants.go`` (commit 582a6ad190b6848f1d26f8bf08ddef29955d9db1) — the RFC 6962 test tree that
  Certificate Transparency's own test suites used.
* ``INCLUSION_PROOFS``, ``CONSISTENCY_PROOFS`` and the corrupted-proof probes: transparency-dev/merkle,
  ``proof/verify_test.go`` (commit 02194e9afb6c1d95b5381350007963aa70fff472).
* ``ARGON_*``: real responses of Google's Argon 2020 Certificate Transparency log (get-sth, get-entries
  start=10000, get-proof-by-hash, get-sth-consistency first=3654490), as stored in golang/mod,
  ``sumdb/tlog/testdata/argon2020/{sth,entries,proof,consistency}.json`` and used by ``sumdb/tlog/ct_test.go``
  (commit b5136e5ba156da612a1efc6e49b55988a134a5e0).
"""

from __future__ import annotations

import base64
import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cutout.audit.errors import ProofError, TreeError
from cutout.audit.merkle import (
    EMPTY_ROOT,
    TILE_LEVEL,
    CompactRange,
    MerkleTree,
    Node,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    root_from_inclusion_proof,
    tiled_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex

# -- transparency-dev/merkle testonly/constants.go --------------------------------------------------------------

LEAF_INPUTS = [
    h(""),
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]

NODE_HASHES = [
    [
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
        h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
        h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
    ],
    [
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    ],
    [
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    [
        h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
    ],
]

# RootHashes(): indexed by tree size, from the empty tree
ROOTS = [
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]

# CompactTrees(): the compact range nodes of each tree size, as (level, index) into NODE_HASHES
COMPACT_TREES: list[list[tuple[int, int]]] = [
    [],
    [(0, 0)],
    [(1, 0)],
    [(1, 0), (0, 2)],
    [(2, 0)],
    [(2, 0), (0, 4)],
    [(2, 0), (1, 2)],
    [(2, 0), (1, 2), (0, 6)],
    [(3, 0)],
]

# -- transparency-dev/merkle proof/verify_test.go ----------------------------------------------------------------
# (leaf, size, proof) with the leaf numbered from 1, as there
INCLUSION_PROOFS: list[tuple[int, int, list[bytes]]] = [
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (3, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        2,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]

# (size1, size2, proof)
CONSISTENCY_PROOFS: list[tuple[int, int, list[bytes]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]

SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")

# -- golang/mod sumdb/tlog/testdata/argon2020 -----------------------------------------------------------------------
# sth.json
ARGON_SIZE = 961984013
ARGON_ROOT = base64.b64decode("dwlueapdd7LaOEnX2W2Wp9v2XE+KzejHRQGHwEx0oaM=")
# ct_test.go: the root at the older size asked for in get-sth-consistency
ARGON_OLD_SIZE = 3654490
ARGON_OLD_ROOT = base64.b64decode("AuIZ5V6sDUj1vn3Y1K85oOaQ7y+FJJKtyRTl1edIKBQ=")
ARGON_LEAF_INDEX = 10000
# entries.json leaf_input; proof.json audit_path; consistency.json consistency
ARGON_LEAF_INPUT = base64.b64decode(
    "AAAAAAFelPhqUwAAAAViMIIFXjCCBEagAwIBAgIRAOodHzZdqWIFzYyl/SovhCMwDQYJKoZIhvcNAQELBQAwgZAxCzAJBgNVBAYTAkdCMRsw"
    "GQYDVQQIExJHcmVhdGVyIE1hbmNoZXN0ZXIxEDAOBgNVBAcTB1NhbGZvcmQxGjAYBgNVBAoTEUNPTU9ETyBDQSBMaW1pdGVkMTYwNAYDVQQD"
    "Ey1DT01PRE8gUlNBIERvbWFpbiBWYWxpZGF0aW9uIFNlY3VyZSBTZXJ2ZXIgQ0EwHhcNMTcwMjE1MDAwMDAwWhcNMjAwNDE2MjM1OTU5WjBf"
    "MSEwHwYDVQQLExhEb21haW4gQ29udHJvbCBWYWxpZGF0ZWQxHTAbBgNVBAsTFFBvc2l0aXZlU1NMIFdpbGRjYXJkMRswGQYDVQQDDBIqLmxh"
    "bmRsb3Jkcy5jb20uYXUwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQCtPBKKHj4zdrGlCjgTHzb5gx9JCs97DwvBz60f14gDufF2"
    "haWbOxyJ0a3opAMsZnOr8HkARVCwxdqG/PTfACcb0QM7FOlzvxGqxataTYiChwvkkif8F9GlJw69HuHgzhusPf1Ytfk3ps1PRC14MkyrS4kw"
    "Prk/Le4XdkqRpRw62wG4V6IkbzsNMEOl1H8EgUbfyapdOcVxHjIzvBVy56fBRKG05Fr5wNq3Acak5kYZdNsLhhmlrqAfAjiombW3hb3V5blJ"
    "dRC0BDdYHv2+zKey6LqJ1FDoXo6IzbzPpC+aifZy47YX+/N1U64Qn5xlDg7mOP8JXfkNJHbU1TJZHif5AgMBAAGjggHhMIIB3TAfBgNVHSME"
    "GDAWgBSQr2o6lFoL2JDqElZz30O0Oija5zAdBgNVHQ4EFgQUNQSLjkoz01I+iuuoC5lgEp0anhcwDgYDVR0PAQH/BAQDAgWgMAwGA1UdEwEB"
    "/wQCMAAwHQYDVR0lBBYwFAYIKwYBBQUHAwEGCCsGAQUFBwMCME8GA1UdIARIMEYwOgYLKwYBBAGyMQECAgcwKzApBggrBgEFBQcCARYdaHR0"
    "cHM6Ly9zZWN1cmUuY29tb2RvLmNvbS9DUFMwCAYGZ4EMAQIBMFQGA1UdHwRNMEswSaBHoEWGQ2h0dHA6Ly9jcmwuY29tb2RvY2EuY29tL0NP"
    "TU9ET1JTQURvbWFpblZhbGlkYXRpb25TZWN1cmVTZXJ2ZXJDQS5jcmwwgYUGCCsGAQUFBwEBBHkwdzBPBggrBgEFBQcwAoZDaHR0cDovL2Ny"
    "dC5jb21vZG9jYS5jb20vQ09NT0RPUlNBRG9tYWluVmFsaWRhdGlvblNlY3VyZVNlcnZlckNBLmNydDAkBggrBgEFBQcwAYYYaHR0cDovL29j"
    "c3AuY29tb2RvY2EuY29tMC8GA1UdEQQoMCaCEioubGFuZGxvcmRzLmNvbS5hdYIQbGFuZGxvcmRzLmNvbS5hdTANBgkqhkiG9w0BAQsFAAOC"
    "AQEACyHqxUzrexToY7tOv4+kyGPP2D27P1tQpyzeAl1bPObiMhNK2b9vvBLDWAaqm8c0YL1h+DBdLoWzf3xFsIkTCVCjWJTNSNlcYtgRk6or"
    "1s7jWsfXzWqsnPjPPmTIOCw7EfH7Yme3oxPs3UUsmShAgPwNohAtL9GqlqMiKM6v1WU3NHt01jEoNP23LRa6KeNK6AH6WHJykzL223IlhgXj"
    "HTeuQj6lR+TNrQXJuhwTXYe+20rrpPQxc1Pn7AqnvfWgmicRQ7gdIcr4V6+ecTvLfNOaJ0ZYe5G5giuAAdTm7F57pk04f4gyZNYKrj88mvbk"
    "oriN8b6jcWExtrYO6bm2TwAA"
)
ARGON_AUDIT_PATH = [
    "T46AmJsuOM/gFiGlUp+IJJebp+1Z5qratFNW7U0JyOQ=",
    "9Jj1Feodn42uRYEfffkV4HF/EIPFQ5Zo9IwkxbQ2uhk=",
    "D53/1oCNebF4J59HHgioovKZxrmrKcVuCVhy3Izg8Ck=",
    "wSFDgGSrsXRPA+1c8WHoAFCsWeUv8NDyP/Q/SgsyVyY=",
    "516/RcwsgdwdzHn18v1dJHqBkgFUbNhmCIWOGjsMJaE=",
    "naTFY2ajLFgrgs5XUl+zJYZnnlJksLGsA1VYwpLfqbY=",
    "mKBRJo6qao+0Kdh/rhGkZUbHUAxMhrtrclrTpIbNjIg=",
    "Co4ueOFE7lpifLio94irxxsv1wFMMaK3tPu2ZQkHlro=",
    "yRgy800K6JMYCC05sWfqF2kvCg2riT/pVM+nEa6V5+0=",
    "n2O38XJZC8/Wpbwi9HhgVizlUyeUHVZvYyQB1607MRc=",
    "go3tAjuNfNSCj87y2Rg1xOroDknGN1eaf3cgvzObf7Q=",
    "8D0Mj3/J7ySSnFb0afIHYXv6rlOhECnsebY6XKi1IR8=",
    "6rcez46ZU8M5vPiWVMAUfJfAOV0pPP/mch/lYzZhj/M=",
    "2rtIeXrPvSdUyHc5maIgSAVB2BzaKaupWxSAiVayDE4=",
    "nniW/IMFQPN5xw8UsHFn7CRStYbm1gLu7NNa6kkRqJQ=",
    "mRPPi7sQS22MduIEyvcNzCNFqIt6kLwYPkNKrVtIcu8=",
    "JvTivzESNS9wHI8aph5a7uieVmtS/p9PciMZ5D6GyOo=",
    "UTyQd+Ym0wY4zG+qK806bBORwi1CSVvFQ/KknnqoZj8=",
    "hXODrqN+ff+U6zPqRQ+ZQKs6im1fPcxIerDSfNwflhE=",
    "II6GE+WY/DrpZzfHztLwkR46o37zVkNLCyPYlf68zA0=",
    "d609kWWcNBllbA8Jb/ad4XAVVGnScLRmtP8FYyr+Dck=",
    "rikBsP0G0gioXRpBFED2CzQdSLrGPvRd0bEcbEZw1rI=",
    "GXIElfmnRuWfbA4z7ubV/UwlpSRUbUeec7oL5HDDnh0=",
    "pR0SH/NYP6s9+8azWwaeUXA4Ze/3WCIgMfh5YW6wvcE=",
    "f3GuAKYVrF8RBg3s15jvA/YvV9oAliWtzP/imwPhQVA=",
    "WHn8zDxlVgkV+lSlmzaOdfSBrTHoRr5nT3d76q0KKWE=",
    "f2uV2ZxVgULzLPKuZcowRY3ZY7fRlX59iDBjV1R8kNQ=",
    "NzQVjJsvQwbi7WStMr9oFkh9VbHfK7LB6o7WwAqwNTs=",
    "C0LttBeYHZHgL+032JIcJC3CTBIyza/hsbmJUgJfmDI=",
    "nixU5CWTFVDlF4BGdcU6kA7WSYurEpe9jRWc+F/7sOc=",
]
ARGON_CONSISTENCY = [
    "80Sfbj6UQEdVSZCSIgh9NMPj3vCBzcc1A48B2crJSWg=",
    "FZcrgAHUk6nNPviJZq8kEK6jCG1d18pJOFE45ZDc1TQ=",
    "Q67reWXmPBo1UfmwBap4Xi9PMPfFdUSSw3WGlRZdG7k=",
    "eJ7CyhR4PxzBxDIsWgrVYW1eFUb9ndgf46tFmiqVrxA=",
    "QrDwp062Grm5WY8KdrhFsBuuNjGzRox2Jb8PmVL5OYw=",
    "XM4YMjMEdLH/XJam/ZWyaP14k3cmsOtnPsOWQ54lW1s=",
    "SGiBh+jOTGccXU48ZzgQ88lRcBmtB4wz4oSDndv2QTg=",
    "WAS6txqNLYKGL1GdBdpqmV42TTfn6cJsuDsqLXuTCNI=",
    "QFmRS0rirUA7ZN3lxFjDncV+E1OCrn3NUB4RCp+5fzc=",
    "Hdbp7It2XBNZmNDBpCN/KPd7vfVqxgzwOosqVIaEA9E=",
    "mxvHL0ZiblBdD7j7pIa1jlfB0gSqfJ6oX0UGo7L0VsU=",
    "q5hjyvoW6TL/PThgcitpDcSTrnKX2p1+aqscqH2euRA=",
    "jTOWDqt3IHj2NVFeezyBz2ofpru+ztEywqKUAfFclKI=",
    "GIRn0w3HqJdvU9j1WVD//eR6lk2AaTVjyzjsJNP8U88=",
    "x52GJvxG81fnQBrgOTbll1A5tz95/LXK0Ag1NhB0r1I=",
    "6/0OqrcTgc3o5dD5PymmoC96lB9yLPFuTHVvLy8fSGk=",
    "Gf+iKLfcXO5l4JEFmsZvSdG5q1uEeWPfYLrds6pmjz0=",
    "DGuaco+McyM3AfRSF6qX7RwSetwe2ieYJmxw5e9rVx0=",
    "2tQJ9V32hnYp+fdpP6TcjmgJmLeNVOMKM0Ml1kk4cNU=",
    "3PapK+IkyJr8I9yAErAmzuZezzLMzsg+PfeRCgNW8NQ=",
    "s6xiYeejb+wtqHA+URJZ2I/SCPyIW8coP6aB00FJbMY=",
    "z9lSpmdTcr5M5ZzKlc4EPh3SrSypKFdk6JUF/UccaZU=",
    "GXIElfmnRuWfbA4z7ubV/UwlpSRUbUeec7oL5HDDnh0=",
    "pR0SH/NYP6s9+8azWwaeUXA4Ze/3WCIgMfh5YW6wvcE=",
    "f3GuAKYVrF8RBg3s15jvA/YvV9oAliWtzP/imwPhQVA=",
    "WHn8zDxlVgkV+lSlmzaOdfSBrTHoRr5nT3d76q0KKWE=",
    "f2uV2ZxVgULzLPKuZcowRY3ZY7fRlX59iDBjV1R8kNQ=",
    "NzQVjJsvQwbi7WStMr9oFkh9VbHfK7LB6o7WwAqwNTs=",
    "C0LttBeYHZHgL+032JIcJC3CTBIyza/hsbmJUgJfmDI=",
    "nixU5CWTFVDlF4BGdcU6kA7WSYurEpe9jRWc+F/7sOc=",
]


LEAF_HASHES = [leaf_hash(x) for x in LEAF_INPUTS]


def rfc_mth(hashes: list[bytes]) -> bytes:
    """MTH straight from RFC 9162 §2.1.1, as an oracle."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return node_hash(rfc_mth(hashes[:k]), rfc_mth(hashes[k:]))


def flip(data: bytes, byte: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[byte % len(out)] ^= 1 << bit
    return bytes(out)


# -- known answers ----------------------------------------------------------------------------------------------------


def test_empty_root_is_sha256_of_nothing() -> None:
    assert root([]) == EMPTY_ROOT == ROOTS[0]
    assert MerkleTree([]).root() == EMPTY_ROOT
    assert CompactRange().root() == EMPTY_ROOT


def test_leaf_and_node_hashes_match_transparency_dev() -> None:
    assert NODE_HASHES[0] == LEAF_HASHES
    for level in range(1, len(NODE_HASHES)):
        below = NODE_HASHES[level - 1]
        assert [node_hash(below[2 * i], below[2 * i + 1]) for i in range(len(below) // 2)] == NODE_HASHES[level]


@pytest.mark.parametrize("size", range(len(ROOTS)))
def test_roots_match_transparency_dev(size: int) -> None:
    assert root(LEAF_HASHES[:size]) == ROOTS[size]
    assert MerkleTree(LEAF_HASHES).root(size) == ROOTS[size]
    assert MerkleTree(LEAF_HASHES[:size]).root() == ROOTS[size]
    cr = CompactRange()
    for leaf in LEAF_HASHES[:size]:
        cr.append(leaf)
    assert cr.root() == ROOTS[size]
    assert cr.nodes == tuple(NODE_HASHES[level][index] for level, index in COMPACT_TREES[size])


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION_PROOFS)
def test_inclusion_proofs_match_transparency_dev(leaf: int, size: int, proof: list[bytes]) -> None:
    index = leaf - 1
    assert inclusion_proof(LEAF_HASHES[:size], index) == proof
    assert MerkleTree(LEAF_HASHES).inclusion_proof(index, size) == proof
    assert root_from_inclusion_proof(LEAF_HASHES[index], index, size, proof) == ROOTS[size]
    assert verify_inclusion(LEAF_HASHES[index], index, size, proof, ROOTS[size])


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY_PROOFS)
def test_consistency_proofs_match_transparency_dev(size1: int, size2: int, proof: list[bytes]) -> None:
    assert consistency_proof(LEAF_HASHES[:size2], size1) == proof
    assert MerkleTree(LEAF_HASHES).consistency_proof(size1, size2) == proof
    assert verify_consistency(size1, size2, ROOTS[size1], ROOTS[size2], proof)


def test_all_small_proofs_verify_against_transparency_dev_roots() -> None:
    tree = MerkleTree(LEAF_HASHES)
    for size in range(1, 9):
        for index in range(size):
            assert verify_inclusion(LEAF_HASHES[index], index, size, tree.inclusion_proof(index, size), ROOTS[size])
        for old in range(size + 1):
            assert verify_consistency(old, size, ROOTS[old], ROOTS[size], tree.consistency_proof(old, size))


InclusionProbe = tuple[int, int, bytes, bytes, list[bytes]]
ConsistencyProbe = tuple[int, int, bytes, bytes, list[bytes]]


def inclusion_probes(index: int, size: int, proof: list[bytes], root_: bytes, leaf: bytes) -> list[InclusionProbe]:
    """corruptInclusionProof() of verify_test.go: each must fail."""
    probes: list[InclusionProbe] = [
        (index - 1, size, root_, leaf, proof),
        (index + 1, size, root_, leaf, proof),
        (index ^ 2, size, root_, leaf, proof),
        (index, size * 2, root_, leaf, proof),
        (index, size // 2, root_, leaf, proof),
        (index, size, root_, b"WrongLeaf", proof),
        (index, size, EMPTY_ROOT, leaf, proof),
        (index, size, SOME_HASH, leaf, proof),
        (index, size, root_, leaf, [*proof, b""]),
        (index, size, root_, leaf, [*proof, root_]),
        (index, size, root_, leaf, [b"", *proof]),
        (index, size, root_, leaf, [root_, *proof]),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 8]) + wrong[i][1:]
        probes.append((index, size, root_, leaf, wrong))
    if proof:
        probes.append((index, size, root_, leaf, proof[:-1]))
    if len(proof) > 1:
        probes.append((index, size, root_, leaf, [proof[0], SOME_HASH, *proof[1:]]))
    return probes


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION_PROOFS)
def test_corrupted_inclusion_proofs_fail(leaf: int, size: int, proof: list[bytes]) -> None:
    index = leaf - 1
    for i, s, r, lf, p in inclusion_probes(index, size, proof, ROOTS[size], LEAF_HASHES[index]):
        assert not verify_inclusion(lf, i, s, p, r), (i, s, p)


def consistency_probes(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> list[ConsistencyProbe]:
    """corruptConsistencyProof() of verify_test.go ("WrongRoot" is too short to be a hash): each must fail."""
    probes: list[ConsistencyProbe] = [
        (size1 - 1, size2, root1, root2, proof),
        (size1 + 1, size2, root1, root2, proof),
        (size1 ^ 2, size2, root1, root2, proof),
        (size1, size2 * 2, root1, root2, proof),
        (size1, size2 // 2, root1, root2, proof),
        (size1, size2, b"WrongRoot", root2, proof),
        (size1, size2, root1, b"WrongRoot", proof),
        (size1, size2, root2, root1, proof),
        (size1, size2, root1, root2, []),
        (size1, size2, root1, root2, [*proof, b""]),
        (size1, size2, root1, root2, [*proof, root1]),
        (size1, size2, root1, root2, [*proof, root2]),
        (size1, size2, root1, root2, [b"", *proof]),
        (size1, size2, root1, root2, [root1, *proof]),
        (size1, size2, root1, root2, [root2, *proof]),
        (size1, size2, root1, root2, [proof[0], *proof]),
        (size1, size2, root1, root2, proof[:-1]),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 16]) + wrong[i][1:]
        probes.append((size1, size2, root1, root2, wrong))
    return probes


@pytest.mark.parametrize(("size1", "size2", "proof"), [c for c in CONSISTENCY_PROOFS if c[2]])
def test_corrupted_consistency_proofs_fail(size1: int, size2: int, proof: list[bytes]) -> None:
    for s1, s2, r1, r2, p in consistency_probes(size1, size2, ROOTS[size1], ROOTS[size2], proof):
        assert not verify_consistency(s1, s2, r1, r2, p), (s1, s2, p)


def test_verify_inclusion_edge_cases_of_transparency_dev() -> None:
    # TestVerifyInclusionSingleEntry
    one = leaf_hash(b"data")
    assert verify_inclusion(one, 0, 1, [], one)
    assert not verify_inclusion(b"", 0, 1, [], one)
    assert not verify_inclusion(one, 0, 1, [], b"")
    assert not verify_inclusion(b"", 0, 1, [], b"")
    # TestVerifyInclusion: impossible index/size pairs never verify
    for index, size in [(0, 0), (0, 1), (1, 0), (2, 1)]:
        assert not verify_inclusion(SOME_HASH, index, size, [], b"")
        assert not verify_inclusion(b"", index, size, [], EMPTY_ROOT)
        assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)


def test_verify_consistency_edge_cases_of_transparency_dev() -> None:
    # TestVerifyConsistency's table; its "don't care" roots are given 32 bytes here, as every root is
    root1, root2 = hashlib.sha256(b"don't care 1").digest(), hashlib.sha256(b"don't care 2").digest()
    cases = [
        (0, 0, root1, root2, [], False),
        (1, 1, root1, root2, [], False),
        (0, 0, root1, root1, [], True),
        (0, 1, root1, root2, [], True),
        (1, 1, root2, root2, [], True),
        (1, 0, root1, root2, [], False),
        (2, 1, root1, root2, [], False),
        (1, 2, root1, root2, [], False),
        (0, 0, EMPTY_ROOT, root2, [], False),
        (1, 1, EMPTY_ROOT, root2, [], False),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    ]
    for size1, size2, r1, r2, proof, want in cases:
        assert verify_consistency(size1, size2, r1, r2, proof) is want, (size1, size2)


def test_real_certificate_transparency_log_proofs() -> None:
    leaf = leaf_hash(ARGON_LEAF_INPUT)
    path = [base64.b64decode(p) for p in ARGON_AUDIT_PATH]
    assert root_from_inclusion_proof(leaf, ARGON_LEAF_INDEX, ARGON_SIZE, path) == ARGON_ROOT
    assert verify_inclusion(leaf, ARGON_LEAF_INDEX, ARGON_SIZE, path, ARGON_ROOT)
    assert not verify_inclusion(leaf, ARGON_LEAF_INDEX + 1, ARGON_SIZE, path, ARGON_ROOT)
    assert not verify_inclusion(leaf_hash(ARGON_LEAF_INPUT[:-1]), ARGON_LEAF_INDEX, ARGON_SIZE, path, ARGON_ROOT)

    proof = [base64.b64decode(p) for p in ARGON_CONSISTENCY]
    assert verify_consistency(ARGON_OLD_SIZE, ARGON_SIZE, ARGON_OLD_ROOT, ARGON_ROOT, proof)
    assert not verify_consistency(ARGON_OLD_SIZE + 1, ARGON_SIZE, ARGON_OLD_ROOT, ARGON_ROOT, proof)
    assert not verify_consistency(ARGON_OLD_SIZE, ARGON_SIZE, ARGON_ROOT, ARGON_OLD_ROOT, proof)
    for i in range(len(proof)):
        assert not verify_consistency(
            ARGON_OLD_SIZE, ARGON_SIZE, ARGON_OLD_ROOT, ARGON_ROOT, [*proof[:i], flip(proof[i], 7), *proof[i + 1 :]]
        )


# -- against the RFC's own recursion -------------------------------------------------------------------------------


def test_root_equals_the_rfc_recursion_for_every_size_up_to_130() -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(130)]
    tree = MerkleTree(hashes)
    for size in range(131):
        want = rfc_mth(hashes[:size])
        assert root(hashes[:size]) == want
        assert tree.root(size) == want


# -- properties -------------------------------------------------------------------------------------------------------

leaf_lists = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70)


@settings(max_examples=60, deadline=None)
@given(leaf_lists, st.data())
def test_every_inclusion_proof_verifies_and_any_flipped_byte_fails(hashes: list[bytes], data: st.DataObject) -> None:
    size = len(hashes)
    index = data.draw(st.integers(0, size - 1))
    want_root = rfc_mth(hashes)
    proof = inclusion_proof(hashes, index)
    assert proof == MerkleTree(hashes).inclusion_proof(index)
    assert verify_inclusion(hashes[index], index, size, proof, want_root)
    byte, bit = data.draw(st.integers(0, 31)), data.draw(st.integers(0, 7))
    assert not verify_inclusion(flip(hashes[index], byte, bit), index, size, proof, want_root)
    assert not verify_inclusion(hashes[index], index, size, proof, flip(want_root, byte, bit))
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:k], flip(proof[k], byte, bit), *proof[k + 1 :]]
        assert not verify_inclusion(hashes[index], index, size, bad, want_root)
    if size > 1:
        other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
        assert not verify_inclusion(hashes[index], other, size, proof, want_root) or hashes[other] == hashes[index]


@settings(max_examples=60, deadline=None)
@given(leaf_lists, st.data())
def test_every_consistency_proof_verifies_and_any_flipped_byte_fails(hashes: list[bytes], data: st.DataObject) -> None:
    new = len(hashes)
    old = data.draw(st.integers(0, new))
    old_root, new_root = rfc_mth(hashes[:old]), rfc_mth(hashes)
    proof = consistency_proof(hashes, old)
    assert proof == MerkleTree(hashes).consistency_proof(old)
    assert verify_consistency(old, new, old_root, new_root, proof)
    if 0 < old < new:
        byte, bit = data.draw(st.integers(0, 31)), data.draw(st.integers(0, 7))
        assert not verify_consistency(old, new, flip(old_root, byte, bit), new_root, proof)
        assert not verify_consistency(old, new, old_root, flip(new_root, byte, bit), proof)
        k = data.draw(st.integers(0, len(proof) - 1))
        assert not verify_consistency(
            old, new, old_root, new_root, [*proof[:k], flip(proof[k], byte, bit), *proof[k + 1 :]]
        )
        assert not verify_consistency(old, new, old_root, new_root, proof[:-1])
        assert not verify_consistency(old, new, old_root, new_root, [*proof, proof[-1]])


@settings(max_examples=60, deadline=None)
@given(leaf_lists, st.lists(st.integers(0, 20), max_size=6))
def test_compact_range_batches_give_the_same_roots_and_proofs(hashes: list[bytes], cuts: list[int]) -> None:
    tree = MerkleTree(hashes)
    one_by_one, batched = CompactRange(), CompactRange()
    for leaf in hashes:
        one_by_one.append(leaf)
    start = 0
    for cut in [*cuts, len(hashes)]:
        end = min(len(hashes), start + cut) if cut != len(hashes) else len(hashes)
        proofs = batched.extend_with_proofs(hashes[start:end])
        assert batched.size == end
        assert batched.root() == tree.root(end)
        for i, proof in enumerate(proofs, start):
            assert proof == tree.inclusion_proof(i, end)
        start = end
    assert batched == one_by_one
    assert CompactRange.from_bytes(batched.size, batched.to_bytes()) == batched
    plain = CompactRange()
    plain.extend(hashes)
    assert plain == batched and plain.root() == root(hashes)
    cut_up, start = CompactRange(), 0  # extend in the same batches: a few leaves go one by one, more level-wise
    for cut in [*cuts, len(hashes)]:
        end = min(len(hashes), start + cut)
        cut_up.extend(hashes[start:end])
        assert cut_up.size == end and cut_up.root() == tree.root(end)
        start = end
    assert cut_up == batched


def test_compact_range_resumes_from_its_stored_form() -> None:
    hashes = [leaf_hash(str(i).encode()) for i in range(1000)]
    cr = CompactRange()
    rng = random.Random(7)
    done = 0
    while done < len(hashes):
        step = rng.randint(1, 90)
        cr = CompactRange.from_bytes(cr.size, cr.to_bytes())  # what a service would reload per transaction
        proofs = cr.extend_with_proofs(hashes[done : done + step])
        done = cr.size
        for i, proof in enumerate(proofs, done - len(proofs)):
            assert verify_inclusion(hashes[i], i, done, proof, cr.root())
    assert cr.root() == root(hashes)
    assert len(cr.nodes) == bin(1000).count("1")


def test_bigger_tree_agrees_everywhere() -> None:
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range((1 << 15) + 3)]
    tree = MerkleTree(hashes)
    cr = CompactRange()
    cr.extend(hashes)
    assert root(hashes) == tree.root() == cr.root()
    rng = random.Random(1)
    for _ in range(20):
        new = rng.randint(1, len(hashes))
        old = rng.randint(0, new)
        index = rng.randrange(new)
        assert verify_inclusion(hashes[index], index, new, tree.inclusion_proof(index, new), tree.root(new))
        assert verify_consistency(old, new, tree.root(old), tree.root(new), tree.consistency_proof(old, new))
    assert inclusion_proof(hashes, 12345) == tree.inclusion_proof(12345)
    assert consistency_proof(hashes, 20000) == tree.consistency_proof(20000)


# -- argument checking -------------------------------------------------------------------------------------------------


def test_bad_arguments_raise_tree_errors() -> None:
    with pytest.raises(TreeError, match="leaf hash 1 is not 32 bytes"):
        root([SOME_HASH, b"short"])
    with pytest.raises(TreeError, match="leaf index 3"):
        inclusion_proof(LEAF_HASHES[:3], 3)
    with pytest.raises(TreeError, match="old size 9"):
        consistency_proof(LEAF_HASHES, 9)
    tree = MerkleTree(LEAF_HASHES)
    with pytest.raises(TreeError):
        tree.root(9)
    with pytest.raises(TreeError):
        tree.inclusion_proof(5, 5)
    with pytest.raises(TreeError):
        tree.consistency_proof(6, 5)
    with pytest.raises(TreeError, match="has 2 nodes"):
        CompactRange(3, [SOME_HASH])
    with pytest.raises(TreeError):
        CompactRange.from_bytes(1, b"x" * 33)
    with pytest.raises(TreeError):
        CompactRange().append(b"short")
    with pytest.raises(ProofError, match="too short"):
        root_from_inclusion_proof(LEAF_HASHES[0], 0, 8, [])
    with pytest.raises(ProofError, match="too long"):
        root_from_inclusion_proof(LEAF_HASHES[0], 0, 1, [SOME_HASH])
    assert tree.leaf_hash(7) == LEAF_HASHES[7]
    assert len(tree) == 8
    assert consistency_proof(LEAF_HASHES, 0) == consistency_proof(LEAF_HASHES, 8) == []


def _noted(hashes: list[bytes], from_level: int) -> list[Node]:
    """The perfect subtrees of ``from_level`` or above, as appending the leaves one by one notes them."""
    tree, done = CompactRange(), []
    for h in hashes:
        tree.append(h, done, from_level)
    return done


def test_appending_notes_every_perfect_subtree_once_with_its_hash() -> None:
    hashes = [leaf_hash(b"%d" % i) for i in range(300)]
    full = MerkleTree(hashes)
    noted = _noted(hashes, 2)
    expected = [(level, position) for level in range(2, 9) for position in range(300 >> level)]
    assert sorted((n.level, n.position) for n in noted) == sorted(expected)
    for n in noted:
        lo = n.position << n.level
        assert n.hash == root(hashes[lo : lo + (1 << n.level)])
        if lo == 0:
            assert n.hash == full.root(1 << n.level)
    # noting changes nothing of the range itself
    plain = CompactRange()
    plain.extend(hashes)
    noting = CompactRange()
    for h in hashes:
        noting.append(h, [], 3)
    assert noting == plain


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=200), st.data())
def test_a_tiled_proof_is_the_proof_of_the_whole_tree(size: int, data: st.DataObject) -> None:
    """With tiles of four leaves, sizes up to 200 cross many tiles and levels of stored nodes."""
    tile_level = 2
    hashes = [leaf_hash(b"leaf %d" % i) for i in range(size)]
    nodes = {(n.level, n.position): n.hash for n in _noted(hashes, tile_level)}
    tiles_read: list[int] = []

    def tile(t: int) -> list[bytes]:
        tiles_read.append(t)
        return hashes[t << tile_level : (t + 1) << tile_level]

    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = tiled_inclusion_proof(index, size, lambda level, pos: nodes[level, pos], tile, tile_level)
    assert proof == MerkleTree(hashes).inclusion_proof(index)
    assert verify_inclusion(hashes[index], index, size, proof, root(hashes))
    assert len(tiles_read) == len(set(tiles_read)) <= 2  # the leaf's own tile, and the last one


def test_a_tiled_proof_at_the_real_tile_width_reads_two_tiles_and_a_few_nodes() -> None:
    size = 5 * (1 << TILE_LEVEL) + 37
    hashes = [leaf_hash(b"entry %d" % i) for i in range(size)]
    nodes = {(n.level, n.position): n.hash for n in _noted(hashes, TILE_LEVEL)}
    asked: list[tuple[int, int]] = []

    def node(level: int, pos: int) -> bytes:
        asked.append((level, pos))
        return nodes[level, pos]

    tiles = {t: hashes[t << TILE_LEVEL : (t + 1) << TILE_LEVEL] for t in range(6)}
    for index in (0, 255, 256, 700, size - 1):
        asked.clear()
        proof = tiled_inclusion_proof(index, size, node, tiles.__getitem__)
        assert proof == MerkleTree(hashes).inclusion_proof(index)
        assert len(asked) <= size.bit_length()
    with pytest.raises(TreeError, match="too few"):
        tiled_inclusion_proof(size - 1, size, node, lambda t: tiles[t][:10])
    with pytest.raises(TreeError, match="not in a tree"):
        tiled_inclusion_proof(size, size, node, tiles.__getitem__)
