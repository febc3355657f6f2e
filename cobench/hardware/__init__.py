"""The device side: the cited device catalogue (devices/*.yaml), Jetson facts and `doctor`."""
