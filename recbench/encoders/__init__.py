"""Item encoders: ID, text (BERT family), CLIP (text/image), ID + content fusion."""
