"""A local web app over an index: REST API (``/api``, schema at ``/docs``) and a one-page UI.

Example::

    from vidconcept.web import create_app
    app = create_app("vidconcept-index")     # any ASGI server can run it
    # or, from a shell: vidconcept serve --index vidconcept-index
"""
from vidconcept.web.app import create_app, serve

__all__ = ["create_app", "serve"]
