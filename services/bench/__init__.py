"""`defectflow bench`: Triton alone versus the whole pipeline on the same machine, in one run."""
