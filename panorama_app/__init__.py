"""The on-device Panorama application arrives with the application issue."""
