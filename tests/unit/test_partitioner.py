"""The producers' partitioner must place a key where the Java client (and aiokafka's default) would: consumers and
other producers of the same topic rely on one key, one partition."""

import random

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from shared.kafka import murmur2, partition_for

# org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed 32-bit results of the Java client)
JAVA_CASES = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def _signed(h: int) -> int:
    return h - (1 << 32) if h & 0x80000000 else h


def test_murmur2_gives_the_java_clients_values():
    assert {data: _signed(murmur2(data)) for data in JAVA_CASES} == JAVA_CASES


def test_murmur2_agrees_with_aiokafka_for_every_tail_length():
    rng = random.Random(7)
    samples = [rng.randbytes(rng.randrange(0, 120)) for _ in range(20_000)] + [b"", b"\xff" * 3, b"\x80" * 37]
    assert [murmur2(d) for d in samples] == [aiokafka_murmur2(d) for d in samples]


def test_keyed_records_go_where_the_default_partitioner_sends_them():
    rng = random.Random(11)
    default = DefaultPartitioner()
    for count in (1, 3, 12, 50):
        partitions = list(range(count))
        for _ in range(500):
            key = str(rng.getrandbits(128)).encode()
            assert partition_for(key, partitions, partitions[1:]) == default(key, partitions, partitions[1:])


def test_a_record_without_key_goes_to_an_available_partition():
    chosen = {partition_for(None, [0, 1, 2, 3], [1, 3]) for _ in range(200)}
    assert chosen == {1, 3}
    assert partition_for(None, [0, 1], []) in (0, 1)
