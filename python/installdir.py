"""Print where `meson install` puts the kv module for this python and prefix.

Usage: python3 installdir.py PREFIX

Debian patches sysconfig: its python3 reads /usr/local/lib/python3.X/
dist-packages (scheme posix_local) and /usr/lib/python3/dist-packages
(deb_system), never the .../site-packages that the upstream posix_prefix
scheme (meson's default) names. Use Debian's schemes for those two
prefixes, and posix_prefix for any other prefix or Python.
"""
import os
import sys
import sysconfig

prefix = os.path.normpath(sys.argv[1])
schemes = sysconfig.get_scheme_names()
if prefix == "/usr" and "deb_system" in schemes:
    scheme, base = "deb_system", "/usr"
elif prefix == "/usr/local" and "posix_local" in schemes:
    scheme, base = "posix_local", "/usr"  # the scheme adds the /local
else:
    scheme, base = "posix_prefix", prefix
print(sysconfig.get_path("platlib", scheme, vars={"base": base, "platbase": base}))
