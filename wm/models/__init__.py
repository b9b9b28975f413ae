"""Keras 3 models of wm (the World Models V and M), with weights stored inside HDF5 artifacts."""
