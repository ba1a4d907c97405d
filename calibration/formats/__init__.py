"""Calibration file formats, one module each: ``ros_yaml`` (camera_info YAML), ``ini``
(camera_calibration_parsers INI), ``opencv`` (OpenCV FileStorage YAML/XML), ``camera_info``
(``sensor_msgs/CameraInfo`` fields) and ``mounting`` (camera pose YAML); ``_fields`` reads and
checks the fields they share. The entry points (any file -> a camera model) are in
``calibration.io``.
"""
