"""The web dashboard: static files served by the API itself at `/ui`, no CDN, no build step."""
