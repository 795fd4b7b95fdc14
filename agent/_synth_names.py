"""Embedded data for ``samenloop synth``: Dutch given names, surnames (with particles),
streets, municipalities (CBS code, postcode range) and institutions.

Everything here is public, common vocabulary; combinations are random, so no real
person or household is described. Lists are tuples so that their order (and with it the
generator's output for a seed) never depends on hashing.
"""

# ruff: noqa: RUF001 - Turkish names are spelled with the dotless i (U+0131) on purpose
from __future__ import annotations

# Surname particles (voorvoegsels), longest first so "van der" wins over "van".
PARTICLES: tuple[str, ...] = (
    "van de la", "op den", "in 't", "van 't", "van der", "van den", "van de", "de la",
    "van", "de", "den", "der", "ter", "ten", "te", "'t", "la", "le", "d'",
)

DUTCH_MALE: tuple[str, ...] = (
    "Jan", "Pieter", "Johannes", "Hendrik", "Cornelis", "Willem", "Gerrit", "Jacobus",
    "Adrianus", "Theodorus", "Petrus", "Antonius", "Franciscus", "Wilhelmus", "Gerardus",
    "Johan", "Hans", "Henk", "Kees", "Piet", "Klaas", "Dirk", "Bert", "Wim", "Ton", "Frank",
    "Peter", "Paul", "Mark", "Marco", "Martin", "Michel", "Erik", "Rob", "Richard", "Robert",
    "Dennis", "Patrick", "Jeroen", "Bas", "Sander", "Remco", "Niels", "Maarten", "Arjen",
    "Thijs", "Tim", "Tom", "Roel", "Ruud", "Rutger", "Stefan", "Vincent", "Wouter", "Jasper",
    "Joost", "Koen", "Lars", "Luuk", "Daan", "Sem", "Noah", "Lucas", "Levi", "Finn", "Milan",
    "Jesse", "Bram", "Thomas", "Liam", "Mees", "Luca", "Sam", "Max", "Ruben", "Gijs",
    "Julian", "Jayden", "Thijmen", "Siem", "Hugo", "Teun", "Olivier", "Boaz", "Mats", "Jens",
    "Stijn", "Floris", "Jurre", "Tijn", "Otis", "Guus", "Hidde", "Jelle", "Sven", "Wessel",
    "Niek", "Job", "Pim", "Cas", "Dex", "Morris", "Benjamin", "David", "Daniël", "Joël",
    "Raphaël", "Michaël", "Noël", "René", "André", "José", "Ferdinand", "Leendert", "Arie",
    "Teunis", "Hein", "Joop", "Gert", "Geert", "Sjoerd", "Wiebe", "Jelmer", "Bauke", "Douwe",
    "Hessel", "Tjeerd", "Siebe", "Jurjen", "Rik", "Mick", "Rick", "Kevin", "Nick", "Mike",
    "Jordy", "Danny", "Alexander", "Christiaan", "Frederik", "Laurens", "Matthijs", "Reinier",
    "Rogier", "Sebastiaan", "Timo", "Twan", "Wout", "Youri", "Yannick", "Zeger", "Abel",
    "Aart", "Anton", "Bart", "Berend", "Bob", "Casper", "Coen", "Derk", "Diederik", "Edwin",
    "Egbert", "Emiel", "Evert", "Ewoud", "Fons", "Freek", "Gerben", "Gijsbert", "Harm",
    "Herman", "Huub", "Ivo", "Jaap", "Jacob", "Jorrit", "Jos", "Jurgen", "Karel",
    "Lodewijk", "Marcel", "Marnix", "Menno", "Nico", "Olaf", "Onno", "Oscar", "Pepijn",
    "Quinten", "Rens", "Rinus", "Roelof", "Ronald", "Sietse", "Simon", "Sjaak",
    "Steven", "Sybren", "Theo", "Tobias", "Victor", "Wilco", "Wilfred", "Xander",
)
DUTCH_FEMALE: tuple[str, ...] = (
    "Maria", "Johanna", "Cornelia", "Anna", "Wilhelmina", "Elisabeth", "Hendrika", "Adriana",
    "Catharina", "Geertruida", "Jacoba", "Petronella", "Margaretha", "Antonia", "Helena",
    "Francisca", "Theodora", "Gerarda", "Aaltje", "Grietje", "Trijntje", "Annie", "Ria",
    "Tineke", "Marian", "Marianne", "Monique", "Sandra", "Linda", "Esther", "Ingrid", "Petra",
    "Anja", "Karin", "Wendy", "Mirjam", "Saskia", "Yvonne", "Ellen", "Judith", "Marloes",
    "Sanne", "Lisa", "Anouk", "Fleur", "Iris", "Eva", "Femke", "Lotte", "Sophie", "Emma",
    "Julia", "Tess", "Zoë", "Noa", "Mila", "Sara", "Evi", "Lieke", "Nina", "Yara", "Saar",
    "Liv", "Nora", "Olivia", "Isa", "Lynn", "Roos", "Fenna", "Elin", "Jasmijn", "Lara",
    "Maud", "Floor", "Sterre", "Fenne", "Noor", "Vera", "Esmee", "Demi", "Kim", "Lisanne",
    "Manon", "Danielle", "Chantal", "Mariëlle", "Daniëlle", "Rosalie", "Anneloes", "Hanneke",
    "Marieke", "Ilse", "Inge", "Joke", "Truus", "Corrie", "Nel", "Bep", "Greet", "Mieke",
    "Wilma", "Gerda", "Henny", "Els", "Jolanda", "Astrid", "Bianca", "Natasja", "Ilona",
    "Kirsten", "Loes", "Maaike", "Nienke", "Renske", "Aukje", "Sietske", "Baukje", "Froukje",
    "Geertje", "Hinke", "Jeltje", "Tjitske", "Dieuwke", "Noëlle", "Chloë", "Joëlle",
    "Hélène", "Renée", "Désirée", "Irène", "Cécile", "Inès", "Anaïs", "Eline", "Elise",
    "Amber", "Anne", "Annemieke", "Annelies", "Bente", "Britt", "Carlijn", "Charlotte",
    "Claudia", "Dewi", "Didi", "Dominique", "Evelien", "Fay", "Fiene", "Frederique",
    "Gwen", "Hannah", "Hester", "Ivy", "Janneke", "Jet", "Jildou", "Jolien", "Josephine",
    "Juul", "Karlijn", "Kiki", "Laura", "Lina", "Lizzy", "Lola", "Louise", "Lucy",
    "Madelief", "Margot", "Marit", "Meike", "Merel", "Mirthe", "Myrthe", "Naomi", "Nova",
    "Pien", "Puck", "Quirine", "Rianne", "Romy", "Rosa", "Sofie", "Suze", "Tamara", "Tirza",
    "Valerie", "Veerle", "Wies", "Willemijn", "Yfke", "Zara",
)
DUTCH_SURNAMES: tuple[str, ...] = (
    "de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Janssen",
    "Visser", "Smit", "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters",
    "Hendriks", "van Leeuwen", "Dekker", "Brouwer", "de Wit", "Dijkstra", "Smits",
    "de Graaf", "van der Meer", "van der Linden", "Kok", "Jacobs", "de Haan", "Vermeulen",
    "van den Heuvel", "van der Veen", "van den Broek", "de Bruijn", "de Bruin",
    "van der Heijden", "Schouten", "van Beek", "Willems", "Hoekstra", "Maas",
    "Verhoeven", "Koster", "van Dam", "van der Wal", "Prins", "Blom", "Huisman", "Peeters",
    "de Jonge", "Kuipers", "van Veen", "Post", "Kuiper", "Veenstra", "Kramer",
    "van den Brink", "Scholten", "van Wijk", "Postma", "Martens", "Vink", "de Ruiter",
    "Timmermans", "Groen", "Gerritsen", "Jonker", "van Loon", "Boer", "van der Velde",
    "Willemsen", "Smeets", "de Lange", "de Vos", "Bosch", "van Dongen", "Schipper",
    "de Koning", "van der Laan", "Koning", "van der Velden", "Driessen", "van Doorn",
    "Hermans", "Evers", "van den Bosch", "van der Meulen", "Hofman", "Bosman", "Wolters",
    "Sanders", "van der Horst", "Mol", "Kuijpers", "Molenaar", "van de Pol", "de Leeuw",
    "Verbeek", "van der Berg", "van der Ploeg", "van der Sluis", "van der Zee", "van der Steen",
    "van der Schaaf", "van der Kolk", "van der Pol", "van de Ven", "van de Kamp", "van de Wal",
    "van de Water", "van de Graaf", "van de Berg", "van den Akker", "van den Hoek",
    "van den Dungen", "van den Oever", "van 't Hof", "van 't Veer", "in 't Veld",
    "op den Brouw", "op den Kamp", "ter Horst", "ter Haar", "ter Beek", "ten Brink",
    "ten Have", "ten Cate", "'t Hart", "'t Hooft", "de la Rie", "de la Court", "den Hartog",
    "den Boer", "van Vliet", "van Rijn", "van Es", "van Os", "van Wijngaarden", "van Houten",
    "van Gils", "van Zanten", "van Eijk", "van Vugt", "van Hout", "van Kessel", "van Rooij",
    "van Ginkel", "van Essen", "van Hal", "van Beers", "van Bergen", "van Duijn", "van Hoof",
    "van Laar", "van Oers", "van Wees", "Aalbers", "Albers", "Arends", "Baas",
    "Beekman", "Bekker", "Bergman", "Blok", "Boersma", "Bouma", "Bouwman", "Brands",
    "Brinkman", "Claassen", "Claessens", "Coenen", "Cremers", "Damen", "de Beer", "de Bont",
    "de Clercq", "de Haas", "de Heer", "de Kok", "de Kruijf", "de Man", "de Mol", "de Raad",
    "de Rooij", "de Vet", "de Waal", "de Wolf", "de Zwart", "Dijkman", "Dam", "Eijkelboom",
    "Everts", "Faber", "Franken", "Geerts", "Goossens", "Groenewegen", "Haverkamp",
    "Heijnen", "Hendriksen", "Hoekman", "Hoogendoorn", "Hoogland", "Hoving", "Huijbregts",
    "Jaspers", "Jongsma", "Keizer", "Klaassen", "Kleijn", "Klein", "Knol", "Koeman",
    "Kooistra", "Koopman", "Kroon", "Lammers", "Langeveld", "Lubbers", "Manders", "Meijers",
    "Mertens", "Michiels", "Mooij", "Nijhuis", "Nijland", "Noordhuis", "Oosterhuis",
    "Oosting", "Otten", "Pauwels", "Pieters", "Pool", "Reijnders", "Rietveld", "Roelofs",
    "Rutten", "Schaap", "Schepers", "Schuurman", "Siebers", "Sijbesma", "Slot", "Spijker",
    "Staal", "Steenbergen", "Stoffels", "Terpstra", "Teunissen", "Tromp", "Veldhuis",
    "Verhagen", "Verheij", "Verkerk", "Vermeer", "Verschuren", "Vonk", "Voskuilen",
    "Wagenaar", "Westra", "Wijnands", "Wouters", "Zijlstra", "Zwart", "Zwiers",
)

TURKISH_MALE: tuple[str, ...] = (
    "Mehmet", "Mustafa", "Ahmet", "Ali", "Hüseyin", "Hasan", "İbrahim", "Murat", "Emre",
    "Burak", "Yusuf", "Ömer", "Kerem", "Eren", "Emir", "Mert", "Can", "Berat", "Enes",
    "Furkan", "Serkan", "Volkan", "Kemal", "Osman", "Erdal", "Halil", "Recep", "Süleyman",
)
TURKISH_FEMALE: tuple[str, ...] = (
    "Ayşe", "Fatma", "Emine", "Hatice", "Zeynep", "Elif", "Meryem", "Şerife", "Sultan",
    "Hülya", "Esra", "Büşra", "Merve", "Ecrin", "Defne", "Azra", "Nisa", "Zehra", "Yasemin",
    "Derya", "Gülsüm", "Özlem", "Songül", "Sevda", "Hacer", "Dilek",
)
TURKISH_SURNAMES: tuple[str, ...] = (
    "Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Yıldız", "Yıldırım", "Öztürk", "Aydın",
    "Özdemir", "Arslan", "Doğan", "Kılıç", "Aslan", "Çetin", "Kara", "Koç", "Kurt", "Özkan",
    "Şimşek", "Polat", "Korkmaz", "Karakaya", "Erdoğan", "Güler", "Aktaş", "Bulut", "Keskin",
    "Ünal", "Uçar", "Tekin", "Acar", "Yavuz", "Avcı", "Yücel", "Bozkurt", "Coşkun", "Akın",
    "Taş", "Kaplan",
)
MOROCCAN_MALE: tuple[str, ...] = (
    "Mohammed", "Mohamed", "Ahmed", "Youssef", "Adam", "Ayoub", "Bilal", "Hamza", "Ilias",
    "Rayan", "Soufiane", "Mustafa", "Karim", "Nordin", "Omar", "Anass", "Zakaria", "Imran",
    "Abdelkader", "Said", "Driss", "Hassan", "Khalid", "Mimoun", "Rachid", "Tarik",
)
MOROCCAN_FEMALE: tuple[str, ...] = (
    "Fatima", "Khadija", "Aicha", "Naima", "Malika", "Samira", "Nadia", "Yasmina", "Sara",
    "Imane", "Salma", "Nour", "Hafsa", "Ikram", "Meryem", "Soumaya", "Ilham", "Loubna",
    "Hanan", "Zineb", "Fadoua", "Houda", "Latifa", "Rachida", "Siham",
)
MOROCCAN_SURNAMES: tuple[str, ...] = (
    "El Amrani", "Bouzid", "El Idrissi", "Benali", "Ait Taleb", "Ouali", "Ziani", "Boukhari",
    "El Khatib", "Azzouzi", "Bakkali", "Haddouchi", "Ahajjaj", "Chaara", "El Ouali", "Tahiri",
    "Boujdid", "Amrani", "Hamdaoui", "Laaroussi", "Moussaoui", "Saidi", "Belhaj",
    "El Hadioui", "Abbou", "Aarab", "Bennani", "Charrouf", "El Bouzidi", "Marzouki",
    "Ouazzani", "Zaari",
)
SURINAMESE_MALE: tuple[str, ...] = (
    "Ravi", "Rajesh", "Anil", "Sunil", "Kiran", "Romano", "Gerold", "Earl", "Dwayne",
    "Ricardo", "Roy", "Glenn", "Ashwin", "Prakash", "Dinesh", "Marvin", "Regillio", "Clarence",
    "Hardeo", "Shailesh",
)
SURINAMESE_FEMALE: tuple[str, ...] = (
    "Priya", "Shanti", "Anjali", "Sharmila", "Natasja", "Sunita", "Reshma", "Kavita",
    "Ingrid", "Jennifer", "Sharon", "Gaitrie", "Indira", "Astrid", "Jurmila", "Roshni",
    "Nadia", "Chandra", "Melissa", "Shirley",
)
SURINAMESE_SURNAMES: tuple[str, ...] = (
    "Sewdien", "Ramdin", "Kanhai", "Jagesar", "Ramdihal", "Mohan", "Bhoelai", "Ramkisoen",
    "Soerjoesing", "Sitaldin", "Kartosen", "Pinas", "Wijngaarde", "Venetiaan", "Doelwijt",
    "Amatmoekrim", "Tjin-A-Lim", "Fung-A-Loi", "Pengel", "Biswane", "Ramsaran", "Baldewsingh",
    "Sardjoe", "Koendjbiharie", "Lachmon", "Nurmohamed", "Oemrawsingh", "Brunings",
)
OTHER_MALE: tuple[str, ...] = (
    "Piotr", "Krzysztof", "Tomasz", "Paweł", "Marek", "Ahmad", "Omar", "Khaled", "Yonas",
    "Tesfay", "Dawit", "Andrei", "Ion", "Dimitar", "Samir", "Luís", "João", "Stéphane",
)
OTHER_FEMALE: tuple[str, ...] = (
    "Agnieszka", "Magdalena", "Katarzyna", "Małgorzata", "Rania", "Lina", "Semhar",
    "Senait", "Helen", "Elena", "Ioana", "Maria", "Ana", "Nour", "Lucía", "Françoise",
)
OTHER_SURNAMES: tuple[str, ...] = (
    "Kowalski", "Nowak", "Wiśniewski", "Wójcik", "Kamiński", "Lewandowski", "Al-Hassan",
    "Alhamoud", "Haddad", "Khalil", "Tesfay", "Gebremedhin", "Haile", "Tekle", "Popescu",
    "Ionescu", "Georgiev", "Dimitrov", "da Silva", "dos Santos", "García", "Fernández",
)

# origin -> (male given names, female given names, surnames, weight of households)
ORIGINS: tuple[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], float], ...] = (
    ("nl", DUTCH_MALE, DUTCH_FEMALE, DUTCH_SURNAMES, 0.76),
    ("tr", TURKISH_MALE, TURKISH_FEMALE, TURKISH_SURNAMES, 0.07),
    ("ma", MOROCCAN_MALE, MOROCCAN_FEMALE, MOROCCAN_SURNAMES, 0.07),
    ("sr", SURINAMESE_MALE, SURINAMESE_FEMALE, SURINAMESE_SURNAMES, 0.06),
    ("other", OTHER_MALE, OTHER_FEMALE, OTHER_SURNAMES, 0.04),
)

STREETS: tuple[str, ...] = (
    "Kerkstraat", "Schoolstraat", "Molenstraat", "Dorpsstraat", "Nieuwstraat", "Hoofdstraat",
    "Stationsstraat", "Julianastraat", "Wilhelminastraat", "Beatrixstraat", "Markt",
    "Molenweg", "Kerkweg", "Industrieweg", "Parallelweg", "Emmastraat", "Oranjestraat",
    "Prins Bernhardstraat", "Prinses Irenestraat", "Prinses Margrietstraat", "Sportlaan",
    "Lindelaan", "Eikenlaan", "Beukenlaan", "Berkenlaan", "Kastanjelaan", "Populierenlaan",
    "Wilgenlaan", "Esdoornlaan", "Iepenlaan", "Acacialaan", "Rozenstraat", "Tulpstraat",
    "Narcisstraat", "Leliestraat", "Irisstraat", "Anjerstraat", "Seringenstraat",
    "Jasmijnstraat", "Lavendelstraat", "Merelstraat", "Lijsterstraat", "Mezenlaan",
    "Spreeuwenstraat", "Zwaluwstraat", "Kievitstraat", "Meeuwenlaan", "Reigerstraat",
    "Valkenstraat", "Havikstraat", "Rembrandtstraat", "Vermeerstraat", "Frans Halsstraat",
    "Van Goghstraat", "Jan Steenstraat", "Mondriaanstraat", "Vondelstraat",
    "Bilderdijkstraat", "Da Costastraat", "Multatulistraat", "Johan de Wittstraat",
    "Van Speijkstraat", "Piet Heinstraat", "Michiel de Ruyterstraat", "Tromplaan",
    "Burgemeester de Withstraat", "Burgemeester Roellstraat", "Kennedylaan", "Churchilllaan",
    "Rooseveltstraat", "Marconistraat", "Edisonstraat", "Pascalstraat", "Keplerstraat",
    "Copernicusstraat", "Newtonstraat", "Galileïlaan", "Curieplein", "Lorentzweg",
    "Zernikelaan", "Einsteinstraat", "Amstelstraat", "Maasstraat", "Rijnstraat",
    "Waalstraat", "IJsselstraat", "Lekstraat", "Vechtstraat", "Dinkelstraat",
    "Merwedestraat", "Dommelstraat", "Zuiderzeelaan", "Havenstraat", "Kade", "Oudegracht",
    "Herengracht", "Keizersgracht", "Prinsengracht", "Singel", "Hoogstraat",
    "Lange Nieuwstraat", "Korte Nieuwstraat", "Voorstraat", "Achterstraat", "Kortestraat",
    "Langestraat", "Zuidstraat", "Noordstraat", "Oosterstraat", "Westerstraat", "Zuiderweg",
    "Noorderweg", "Oosterweg", "Westerweg", "Burgwal", "Vismarkt", "Grote Markt",
    "Nieuwe Markt", "Brink", "Dorpsplein", "Kerkplein", "Stationsplein",
    "Jacob van Lennepstraat", "Bloemgracht", "Rozengracht", "Utrechtseweg", "Arnhemseweg",
    "Groningerstraat", "Zwolseweg", "Apeldoornseweg", "Bredaseweg", "Rijksweg",
    "Provincialeweg", "Dijkweg", "Zeedijk", "Dijkstraat", "Polderweg", "Slotstraat",
    "Kasteelweg", "Burgstraat", "Torenstraat", "Molenpad", "Kerkpad", "Schoolpad", "Veldweg",
    "Heideweg", "Boslaan", "Parklaan", "Weidestraat", "Akkerstraat", "Esweg",
    "Boerhaavelaan", "Thorbeckestraat", "Troelstralaan", "Willem Dreesstraat",
    "Schaepmanstraat", "Abraham Kuyperlaan", "Koningin Julianalaan", "Koningsweg",
    "Koninginnelaan", "Prins Hendrikstraat", "Prins Clauslaan", "Willem-Alexanderlaan",
    "Maximalaan", "Amaliastraat", "Oranjelaan", "Nassaustraat", "Van Limburg Stirumstraat",
    "Goudsbloemstraat", "Zonnebloemstraat", "Klaverstraat", "Hyacintstraat",
    "Magnoliastraat", "Hazelaarstraat", "Lindenstraat", "Platanenlaan", "Dennenweg",
    "Sparrenlaan", "Larixlaan", "Vlierstraat", "Meidoornstraat", "Hulststraat",
    "Christiaan Huygensstraat", "Spinozastraat", "Erasmusweg", "Descartesstraat",
    "Kamerlingh Onnesstraat", "Pasteurstraat", "Fahrenheitstraat", "Celsiusstraat",
    "Dr. Schaepmanstraat", "St. Janstraat", "Hoge Der A", "Zuiderdiep", "Oude Ebbingestraat",
    "Coolsingel", "Binnenweg", "Goudsesingel", "Laan van Meerdervoort", "Biltstraat",
    "Twijnstraat", "Hengelosestraat", "Oldenzaalsestraat", "Heuvelstraat", "Stratumseind",
)

# CBS municipality code, municipality, the postcode range used, relative size.
MUNICIPALITIES: tuple[tuple[str, str, int, int, int], ...] = (
    ("GM0014", "Groningen", 9711, 9747, 24),
    ("GM0034", "Almere", 1311, 1364, 22),
    ("GM0363", "Amsterdam", 1011, 1109, 90),
    ("GM0599", "Rotterdam", 3011, 3089, 65),
    ("GM0518", "'s-Gravenhage", 2491, 2599, 55),
    ("GM0344", "Utrecht", 3511, 3585, 36),
    ("GM0772", "Eindhoven", 5611, 5658, 24),
    ("GM0153", "Enschede", 7511, 7548, 16),
    ("GM0080", "Leeuwarden", 8911, 8939, 12),
    ("GM0855", "Tilburg", 5011, 5049, 22),
    ("GM0758", "Breda", 4811, 4839, 18),
    ("GM0268", "Nijmegen", 6511, 6546, 18),
    ("GM0202", "Arnhem", 6811, 6846, 16),
    ("GM0935", "Maastricht", 6211, 6229, 12),
    ("GM0193", "Zwolle", 8011, 8043, 13),
    ("GM0392", "Haarlem", 2011, 2037, 16),
    ("GM0546", "Leiden", 2311, 2334, 12),
    ("GM0503", "Delft", 2611, 2629, 10),
    ("GM0200", "Apeldoorn", 7311, 7339, 16),
    ("GM0307", "Amersfoort", 3811, 3829, 16),
    ("GM0796", "'s-Hertogenbosch", 5211, 5237, 16),
    ("GM0479", "Zaandam", 1501, 1509, 15),
    ("GM0106", "Assen", 9401, 9409, 7),
    ("GM0114", "Emmen", 7811, 7833, 10),
    ("GM0141", "Almelo", 7601, 7609, 7),
    ("GM0150", "Deventer", 7411, 7429, 10),
    ("GM0983", "Venlo", 5911, 5932, 10),
    ("GM0917", "Heerlen", 6411, 6422, 9),
    ("GM0505", "Dordrecht", 3311, 3328, 12),
    ("GM0402", "Hilversum", 1211, 1223, 9),
    ("GM0361", "Alkmaar", 1811, 1829, 11),
    ("GM0400", "Den Helder", 1781, 1789, 6),
    ("GM0228", "Ede", 6711, 6718, 12),
    ("GM0513", "Gouda", 2801, 2809, 7),
    ("GM0606", "Schiedam", 3111, 3125, 8),
    ("GM0637", "Zoetermeer", 2711, 2729, 12),
    ("GM0718", "Vlissingen", 4381, 4389, 4),
    ("GM0687", "Middelburg", 4331, 4339, 5),
    ("GM0794", "Helmond", 5701, 5709, 9),
    ("GM0995", "Lelystad", 8211, 8245, 8),
    ("GM0074", "Heerenveen", 8441, 8449, 5),
    ("GM0037", "Stadskanaal", 9501, 9503, 3),
)
# Names some systems use instead of the official municipality name.
CITY_ALIASES: dict[str, str] = {
    "'s-Gravenhage": "Den Haag",
    "'s-Hertogenbosch": "Den Bosch",
}

# Institutions whose address many unrelated people share (the linkage excludes them).
INSTITUTION_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("shelter", ("Opvang De Haven", "Nachtopvang Het Baken", "Opvang De Brug",
                 "Daklozenopvang De Ark")),
    ("care_home", ("Zorgcentrum De Linde", "Woonzorgcentrum Het Hoge Huys",
                   "Verpleeghuis De Wilgenhof", "Zorgcentrum Sint Jozef")),
    ("womens_shelter", ("Vrouwenopvang Het Anker", "Blijf-huis De Regenboog",
                        "Vrouwenopvang De Toevlucht")),
    ("supported_living", ("Beschermd Wonen De Horizon", "Begeleid Wonen De Stek",
                          "Woonvoorziening Het Kompas", "Beschermd Wonen De Boei")),
)
