"""The pure core of localdev: settings, renderers, manifest analysis and the ``localdev`` command.

Nothing here imports Pulumi (a test proves it), so the command line, the tests and
the Pulumi program in ``components/`` all compute every value the same way.
"""
