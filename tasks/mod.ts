/**
 * Registers the command-line tasks: importing this module runs the `registerTask` calls (cli.ts
 * imports it).
 * @module
 */

import { handlers, transferMlp } from "./l1/commands.ts";
import { MLP_SPEC, REGRESSION_SPEC } from "./l1/run.ts";
import { registerProfile, registerTask } from "./registry.ts";
import { PROFILE_WORKLOADS } from "./profile.ts";
import { evalClassifier, trainClassifier } from "./classifier/commands.ts";
import "./nmt/commands.ts";
import "./gan/commands.ts";

registerTask({
  name: "regression",
  description: "quadratic regression with an L1 term (paper section 5.1.1)",
  ...handlers(REGRESSION_SPEC),
});
registerTask({
  name: "mlp",
  description: "MLP classification with an L1 term (paper sections 5.1.1 and 5.3.2)",
  ...handlers(MLP_SPEC),
  transfer: transferMlp,
});

registerTask({
  name: "classifier",
  description: "train the CNN that scores GAN samples (mnist|fashion; inception score network)",
  train: trainClassifier,
  eval: evalClassifier,
});

for (const [name, workload] of Object.entries(PROFILE_WORKLOADS)) registerProfile(name, workload);
