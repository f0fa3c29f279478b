"""libvirt adapter: the one place libvirt-python is imported (CLI domain commands, the agent).

May import: parse, model, errors. Never imported by the hook.
"""
