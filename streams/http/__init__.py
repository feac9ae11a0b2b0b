"""The HTTP surface: the API and its description, who may call it, the live pages, and
``socialrec api`` that serves them apart from the worker."""
