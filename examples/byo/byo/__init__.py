"""An example of bringing your own code to visionsweep: a model builder and a training function."""
