//! Pools of classroom lines the synthetic transcripts are assembled from (written for this project;
//! no real classroom text). Each subject has topics; each topic has closed recall questions with
//! their short answers, open questions, and claims with the reason a student gives for them.

/// A student's idea: what they claim and why (`I think {claim} because {reason}.`).
pub struct Claim {
    /// The idea, as a clause (`the bigger denominator makes smaller pieces`).
    pub claim: &'static str,
    /// The justification, as a clause (`the whole is cut into more parts`).
    pub reason: &'static str,
}

/// One lesson topic.
pub struct Topic {
    /// Closed recall questions and their one- or two-word answers.
    pub closed: &'static [(&'static str, &'static str)],
    /// Open questions that invite explanation.
    pub open: &'static [&'static str],
    /// Ideas students can put forward and justify.
    pub claims: &'static [Claim],
}

/// A school subject and its topics.
pub struct Subject {
    /// Subject name (used in record ids only).
    pub name: &'static str,
    /// Its topics.
    pub topics: &'static [Topic],
}

/// Short evaluative feedback that closes an exchange without using the answer.
pub const EVALUATIVE: &[&str] = &[
    "Good.",
    "Right.",
    "Correct.",
    "Okay.",
    "Yes.",
    "No, that's not it.",
    "Nice job.",
    "Mm-hmm, next.",
];

/// Follow-ups a teacher adds after revoicing a student's idea.
pub const UPTAKE_FOLLOW_UPS: &[&str] = &[
    "Who can add on to that?",
    "Can you say more about why?",
    "Does everyone agree with that idea?",
    "How does that connect to what we said earlier?",
    "What would someone who disagrees say?",
];

/// Openings of a teacher revoicing the previous student's idea (followed by the idea itself).
pub const UPTAKE_OPENINGS: &[&str] = &[
    "So you're saying that",
    "I heard you say that",
    "Let me make sure I follow: you think that",
    "Interesting, so your idea is that",
];

/// Openings of a second student building on a classmate's idea (followed by a reason).
pub const BUILD_ON_OPENINGS: &[&str] = &[
    "I agree, because",
    "I want to add on, because",
    "I kind of disagree, because",
];

/// Lines about classroom routines; they carry no scored feature.
pub const PROCEDURAL: &[&str] = &[
    "Okay, everyone, eyes up here please.",
    "Take out your notebooks.",
    "We have about ten minutes left.",
    "Put your pencils down for a moment.",
    "Turn to the next page.",
];

/// Every subject the generator draws from.
pub const SUBJECTS: &[Subject] = &[
    Subject {
        name: "math",
        topics: &[
            Topic {
                closed: &[
                    ("What is three times four?", "Twelve."),
                    (
                        "What do we call the bottom number of a fraction?",
                        "The denominator.",
                    ),
                    ("Is one half bigger than one third?", "Yes."),
                    ("What is six divided by two?", "Three."),
                ],
                open: &[
                    "How do you know which fraction is bigger?",
                    "Why do you think that strategy works?",
                    "How did you figure out the answer?",
                    "What would happen if we cut the pizza into more pieces?",
                ],
                claims: &[
                    Claim {
                        claim: "one third is smaller than one half",
                        reason: "the whole is split into more pieces so each piece is smaller",
                    },
                    Claim {
                        claim: "two fourths is the same as one half",
                        reason: "if you put the two pieces together they cover half the square",
                    },
                    Claim {
                        claim: "you can check division with multiplication",
                        reason: "three groups of four makes twelve again",
                    },
                ],
            },
            Topic {
                closed: &[
                    (
                        "What is the perimeter of a square with side five?",
                        "Twenty.",
                    ),
                    ("How many sides does a hexagon have?", "Six."),
                    ("What is seven plus eight?", "Fifteen."),
                ],
                open: &[
                    "Why does the area grow faster than the perimeter?",
                    "Can you explain how you set up the problem?",
                    "What pattern do you notice in the table?",
                ],
                claims: &[
                    Claim {
                        claim: "the area doubles when one side doubles",
                        reason: "you get two copies of the same rectangle side by side",
                    },
                    Claim {
                        claim: "the pattern goes up by three each time",
                        reason: "every new shape adds one more triangle with three sides",
                    },
                ],
            },
        ],
    },
    Subject {
        name: "science",
        topics: &[
            Topic {
                closed: &[
                    ("What do plants need from the sun?", "Light."),
                    ("What gas do we breathe out?", "Carbon dioxide."),
                    ("What is frozen water called?", "Ice."),
                ],
                open: &[
                    "Why do you think the plant by the window grew taller?",
                    "What do you predict will happen to the ice cube, and why?",
                    "How could we test that idea?",
                ],
                claims: &[
                    Claim {
                        claim: "the plant bent toward the window",
                        reason: "it needs light to make its food",
                    },
                    Claim {
                        claim: "the ice melts faster on the metal tray",
                        reason: "metal moves heat into the ice quicker than plastic",
                    },
                    Claim {
                        claim: "we should only change one thing in the test",
                        reason: "otherwise we won't know what caused the difference",
                    },
                ],
            },
            Topic {
                closed: &[
                    ("What force pulls things down?", "Gravity."),
                    ("Is a magnet attracted to wood?", "No."),
                ],
                open: &[
                    "Why did the heavier ball not fall faster?",
                    "What evidence do we have from the experiment?",
                ],
                claims: &[
                    Claim {
                        claim: "both balls hit the ground at the same time",
                        reason: "gravity pulls them the same way when air barely matters",
                    },
                    Claim {
                        claim: "the paperclip sticks but the coin does not",
                        reason: "the paperclip has iron in it and the coin doesn't",
                    },
                ],
            },
        ],
    },
    Subject {
        name: "reading",
        topics: &[
            Topic {
                closed: &[
                    ("Who is the main character?", "Maya."),
                    ("Where does the story take place?", "On a farm."),
                    ("What did Maya find in the barn?", "A kitten."),
                ],
                open: &[
                    "Why do you think Maya kept the kitten a secret?",
                    "How did Maya change from the beginning of the story?",
                    "What clues does the author give about how Maya feels?",
                ],
                claims: &[
                    Claim {
                        claim: "Maya was afraid her dad would say no",
                        reason: "on page four he said there are too many animals already",
                    },
                    Claim {
                        claim: "Maya became braver by the end",
                        reason: "she finally told the truth even though she was scared",
                    },
                    Claim {
                        claim: "the storm shows how Maya feels inside",
                        reason: "it starts when she gets worried and stops when she tells her dad",
                    },
                ],
            },
            Topic {
                closed: &[
                    ("What is the title of the poem?", "Night Train."),
                    ("How many stanzas does it have?", "Three."),
                ],
                open: &[
                    "What do you think the poet means by the last line?",
                    "Why might the poet repeat that word?",
                ],
                claims: &[
                    Claim {
                        claim: "the train stands for growing up",
                        reason: "it keeps moving and never comes back to the station",
                    },
                    Claim {
                        claim: "the repetition makes it sound like wheels",
                        reason: "you read it with the same beat as a train",
                    },
                ],
            },
        ],
    },
    Subject {
        name: "social_studies",
        topics: &[
            Topic {
                closed: &[
                    ("What river runs through our city?", "The Blue River."),
                    ("What do we call a map's list of symbols?", "The key."),
                    ("Which direction is at the top of the map?", "North."),
                ],
                open: &[
                    "Why do you think the first town was built next to the river?",
                    "How would life be different without the railroad?",
                    "What can this map tell us that the photo can't?",
                ],
                claims: &[
                    Claim {
                        claim: "people settled by the river first",
                        reason: "they needed water for farms and boats to move goods",
                    },
                    Claim {
                        claim: "the railroad made the town grow",
                        reason: "farmers could sell their crops to faraway cities",
                    },
                    Claim {
                        claim: "the map shows things you can't see from above",
                        reason: "it has the borders and names that aren't painted on the ground",
                    },
                ],
            },
            Topic {
                closed: &[
                    (
                        "What is a community helper who fights fires?",
                        "A firefighter.",
                    ),
                    ("What do we pay for roads with?", "Taxes."),
                ],
                open: &[
                    "Why do communities make rules?",
                    "What would you change about our town, and why?",
                ],
                claims: &[
                    Claim {
                        claim: "rules keep people safe",
                        reason: "without a speed limit cars could hurt kids near the school",
                    },
                    Claim {
                        claim: "the town needs a bigger library",
                        reason: "there is a waiting list for every popular book",
                    },
                ],
            },
        ],
    },
];
