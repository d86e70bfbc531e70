"""Photo metadata: EXIF, place names, pixel quality, colours, faces, text and AI results,
and the criteria language that finds photos by them (spec 003 §2)."""
