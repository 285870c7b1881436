"""Password hashing: Argon2id with a bounded memory cost per hash.

Django's Argon2 defaults (memory_cost 100 MiB, parallelism 8) allocate 100 MiB for every
hash, in every web worker that signs someone up or logs someone in; with the allocator
keeping what concurrent hashes used, a worker grew from under 100 MB to 165-199 MB. These
parameters are OWASP's first recommendation for Argon2id (19 MiB, 2 passes, 1 lane): each
hash is bounded to 19 MiB and costs about 40 ms of one core (docs/benchmarks.md has the
sign-ups per second they give).

The algorithm's name stays "argon2", so hashes made with Django's defaults still verify;
Django rehashes them with these parameters at the next successful login (`must_update`
compares the stored parameters with these).
"""

from django.contrib.auth.hashers import Argon2PasswordHasher


class BoundedArgon2PasswordHasher(Argon2PasswordHasher):
    """Argon2id at 19 MiB, 2 passes, 1 lane (see the module docstring)."""

    memory_cost = 19 * 1024  # KiB
    time_cost = 2
    parallelism = 1
