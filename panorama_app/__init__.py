"""The on-device Panorama application (code package) and the manifest builders the pipeline shares."""
