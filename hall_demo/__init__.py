"""The whole hall on one PC (`hall-demo`, `hallctl demo`): the daemon with its embedded broker, the
device and management-system emulators, and the Qt apps, each app and the device emulator a
supervised child process. It sits above every other package (DESIGN §2): nothing imports it."""
