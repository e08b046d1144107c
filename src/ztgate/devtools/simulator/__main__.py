from ztgate.devtools.simulator.server import main

main()
