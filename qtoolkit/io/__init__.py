"""Files: the GGUF reader and writer, the safetensors reader, importance-matrix files, and the
rule every writer follows (nothing half-written at the output path). Imports only
:mod:`qtoolkit.errors` and :mod:`qtoolkit.quants`."""
