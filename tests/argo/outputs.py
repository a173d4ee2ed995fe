"""A flow whose outputs the Argo pods refuse (tests/test_argo.py): too big for
an Argo parameter, not JSON, a batch with a result missing."""

import microdag

from argosteps import a_set, bad_batch, big, numbers

flow = microdag.Flow("outputs")
flow.add("numbers", numbers)
flow.add("big", big)
flow.add("a-set", a_set, inputs={"numbers": "numbers"})
flow.add("bad", bad_batch, inputs={"xs": "numbers"}, map="xs", batch_size=3)
