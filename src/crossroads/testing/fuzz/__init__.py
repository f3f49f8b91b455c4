"""A body fuzzer for the whole gateway: mutated requests to every endpoint, then checks
that what the requests share (log, limits, breakers, admin API) still works.

`values` (hostile JSON values and the encoder), `chat_bodies` and `api_requests` (the
mutations), `cases` (a case from a seed and an index), `wire` (raw HTTP), `stage` (gateway,
fakes, keys), `runner` (send and count), `checks` (after the run) and `report` (one run,
start to finish) each hold one part. `benchmarks/fuzz_bodies.py` and
`tests/test_fuzz_bodies.py` drive it.
"""
