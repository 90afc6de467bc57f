"""Capturing a live process's state without killing it: freeze its threads with ptrace, read registers and memory,
and write what was read as an ELF core (gdb), a minidump, or stacks.

The target is paused only between the first thread's stop and the last thread's detach; everything slow that the
caller did not ask for (symbolization, compression) happens outside that window.
"""
