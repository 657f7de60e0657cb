from vidkd.cli import main

raise SystemExit(main())
