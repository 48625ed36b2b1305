"""The throughput sweep: a plan (models × devices × dtypes × formats × modes × batches,
--shard slices) and the loop that measures it into rows."""
