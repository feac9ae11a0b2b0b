"""Hostile inputs for every input topic and HTTP route: the one home of the fuzz generators.

- :mod:`tests.fuzz.ids`: ids from all of Unicode, valid and not (and the hypothesis strategy);
- :mod:`tests.fuzz.records`: a seeded mutator of JSON records that knows what each mutation
  must make a validator answer;
- :mod:`tests.fuzz.topics`: records for ``events``, ``catalog`` and ``privacy.requests``;
- :mod:`tests.fuzz.route_inputs`: each route's own input (scopes, query parameters, bodies);
- :mod:`tests.fuzz.http`: requests for every HTTP route of the worker (credentials, path ids);
- :mod:`tests.fuzz.http_check`: sending them to a worker and checking every answer.

Every generator is seeded: a failure names its seed and case number, and reruns exactly.
"""
