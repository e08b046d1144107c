from ztgate.cli.main import main

main()
