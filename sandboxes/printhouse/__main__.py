from sandboxes.printhouse.server import main

main()
