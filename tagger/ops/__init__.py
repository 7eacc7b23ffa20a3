"""Operations: the Spark session builder, the run lock, storage through Hadoop FileSystem, failpoints,
and the pre-flight over HiveServer2."""
