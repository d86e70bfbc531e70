"""Smart frames: the frame registry, rotation schedules, the feed and the photo cache."""
