from rlcode.cli.app import main

raise SystemExit(main())
