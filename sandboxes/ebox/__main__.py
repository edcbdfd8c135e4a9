from sandboxes.ebox.app import main

main()
