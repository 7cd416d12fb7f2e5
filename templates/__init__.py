"""The request templates that ship with mash-requests.

This file only makes the folder importable data (``mash_requests.templates``) so an installed
wheel finds the templates. Edit the ``.j2`` files, or point ``[mash] templates`` in the config
at a folder of your own: a file there overrides the one here with the same name.
"""
