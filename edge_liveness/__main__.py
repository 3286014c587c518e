from edge_liveness.cli import main

raise SystemExit(main())
