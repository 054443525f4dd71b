from capsvc.cli import main

raise SystemExit(main())
