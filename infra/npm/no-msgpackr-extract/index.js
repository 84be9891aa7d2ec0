// msgpackr loads its native extractor inside try/catch and falls back to JavaScript when it fails.
throw new Error("msgpackr-extract is disabled in eddy (see package.json description)");
