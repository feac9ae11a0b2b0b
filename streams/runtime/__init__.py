"""The live path: the Faust worker, the learner it runs, and what they run (consumer, publisher,
pools, trending, catalogue, privacy, ...). The pipeline, the sources and the store they use
stay beside this package (streams/pipeline/, streams/sources/, streams/store/)."""
