"""Pattern-CNN: chart images from bars, rule-based weak labels, the network, ONNX (issue 17).

Pure domain code: nothing here touches NATS, SQL or the file system beyond the ONNX file
the exporter is asked to write.
"""
