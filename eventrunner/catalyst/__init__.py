"""Catalyst 22.04 compatibility: names Catalyst programs import, with Catalyst's numbers.

``eventrunner.catalyst.metrics`` holds ``catalyst.metrics``' names (needs the ``catalyst``
extra: ``pip install "eventrunner[catalyst]"``); ``eventrunner.metrics`` exposes them too.
"""
