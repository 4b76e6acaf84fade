import random
import uuid

from shared.ids import uuid5


def test_uuid5_is_the_standard_librarys():
    rng = random.Random(5)
    namespaces = [uuid.NAMESPACE_URL, uuid.UUID(int=rng.getrandbits(128)), uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]
    names = ["", "entry\x00t\x00crm\x00e-1", "Grüße 🙂", *("".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(0, 60)))
                                                      for _ in range(2_000))]
    assert [uuid5(ns, n) for ns in namespaces for n in names] == [str(uuid.uuid5(ns, n)) for ns in namespaces for n in names]
