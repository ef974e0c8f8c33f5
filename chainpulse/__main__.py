from chainpulse.cli import main

main()
