from rdt.cli import main

raise SystemExit(main())
