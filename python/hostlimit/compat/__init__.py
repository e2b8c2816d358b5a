"""Drop-in replacements for other rate-limiting libraries, backed by hostlimit.

* ``hostlimit.compat.elspeth``: elspeth's ``RateLimiter``, ``RateLimitRegistry`` and
  ``NoOpLimiter``.
* ``hostlimit.compat.pyrate``: PyrateLimiter's ``Limiter``, ``Rate`` and ``Duration``.
* ``hostlimit.compat.limits``: a ``hostlimit://`` storage for the ``limits`` library (and so
  flask-limiter and slowapi), for its moving-window strategy.
"""
