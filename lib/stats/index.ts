/** Statistics used by the evaluations (t/F/normal distributions come from the maintained `jstat`). */
export * from "./distributions";
export * from "./descriptive";
export * from "./ttest";
export * from "./anova";
export * from "./correlation";
export * from "./bootstrap";
export * from "./between-items";
export * from "./multiple";
