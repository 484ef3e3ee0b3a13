"""The browser co-editor and viewer: static files only (index.html, ES modules under
``static/``), served by app/gateway/web.py; docs/webclient.md describes them."""
