"""The host agent (``vifbroker agent``) and the host-side commands ``push`` and ``demo``.

Modules: ``service`` (the agent: heartbeats, inbox, one worker per migration),
``outgoing``/``incoming`` (the two workers), ``portwatch`` (backend port
events fanned out per domain), ``router`` (which backend owns a vif),
``domainxml`` (where a domain's XML comes from: files, ``virsh -r``, or
``libvirtapi`` over libvirt-python), ``lifecycle`` (the local libvirt's
domain events, which wake the workers), ``state`` (the inbox position
on disk), ``wiring`` and ``cli`` (command line to objects), ``demo``.
"""
