from rlcode.cli import main

raise SystemExit(main())
