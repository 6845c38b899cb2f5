import { describeStack } from "./support/stack-suite.js";

describeStack("prod");
